/* smtp.c - pure SMTP framing: verbs, the client stream framer, the reply parser, the
 * pairing FIFO (see smtp.h). Bytes in, items out; nothing here touches a socket. */
#include "smtptap/smtp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { DEFAULT_MAX_LINE = 16 * 1024, DEFAULT_MAX_REPLY = 64 * 1024 };

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO},         {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA},         {"BDAT", SMTP_VERB_BDAT},
    {"RSET", SMTP_VERB_RSET}, {"NOOP", SMTP_VERB_NOOP},         {"QUIT", SMTP_VERB_QUIT},
    {"VRFY", SMTP_VERB_VRFY}, {"EXPN", SMTP_VERB_EXPN},         {"HELP", SMTP_VERB_HELP},
    {"AUTH", SMTP_VERB_AUTH}, {"STARTTLS", SMTP_VERB_STARTTLS},
};

static size_t strip_terminator(const uint8_t *line, size_t len)
{
    if (len && line[len - 1] == '\n') len--;
    if (len && line[len - 1] == '\r') len--;
    return len;
}

enum smtp_verb smtp_verb_parse(const uint8_t *line, size_t len, const uint8_t **arg,
                               size_t *arg_len)
{
    len = strip_terminator(line, len);
    size_t w = 0;
    while (w < len && line[w] != ' ' && line[w] != '\t') w++;
    size_t a = w;
    while (a < len && (line[a] == ' ' || line[a] == '\t')) a++;
    if (arg) *arg = line + a;
    if (arg_len) *arg_len = len - a;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strlen(verbs[i].name) == w && strncasecmp((const char *)line, verbs[i].name, w) == 0)
            return verbs[i].verb;
    }
    return SMTP_VERB_UNKNOWN;
}

const char *smtp_verb_name(enum smtp_verb v)
{
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (verbs[i].verb == v) return verbs[i].name;
    return "?";
}

bool smtp_bdat_parse(const uint8_t *arg, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0;
    uint64_t v = 0;
    if (len == 0 || arg[0] < '0' || arg[0] > '9') return false;
    for (; i < len && arg[i] >= '0' && arg[i] <= '9'; i++) {
        uint64_t digit = (uint64_t)(arg[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) return false;
        v = v * 10 + digit;
    }
    size_t j = i;
    while (j < len && arg[j] == ' ') j++;
    bool is_last = false;
    if (j < len) {
        if (j == i || len - j != 4 || strncasecmp((const char *)arg + j, "LAST", 4) != 0)
            return false;
        is_last = true;
    }
    *size = v;
    *last = is_last;
    return true;
}

/* ---- client-to-server framer ------------------------------------------------------------ */

/* DATA end matcher states: where we are relative to "\r\n.\r\n". */
enum { DS_LINE_START, DS_MID, DS_CR, DS_DOT, DS_DOT_CR };

void smtp_in_init(struct smtp_in *p)
{
    memset(p, 0, sizeof *p);
    p->mode = SMTP_IN_COMMAND;
    p->max_line = DEFAULT_MAX_LINE;
    buf_init(&p->in);
}

void smtp_in_free(struct smtp_in *p)
{
    buf_free(&p->in);
}

static void smtp_in_settle(struct smtp_in *p)
{
    if (p->taken) buf_consume(&p->in, p->taken);
    p->taken = 0;
}

void smtp_in_feed(struct smtp_in *p, const uint8_t *bytes, size_t len)
{
    smtp_in_settle(p);
    buf_append(&p->in, bytes, len);
}

static void block_on(struct smtp_in *p, enum smtp_verb verb)
{
    p->mode = SMTP_IN_WAIT;
    p->waiting_for = verb;
}

/* Mode change after a complete command line. */
static void after_command(struct smtp_in *p, enum smtp_verb verb, const uint8_t *line, size_t len)
{
    const uint8_t *arg;
    size_t arg_len;
    uint64_t size;
    bool last;
    switch (verb) {
    case SMTP_VERB_DATA:
    case SMTP_VERB_AUTH:
    case SMTP_VERB_STARTTLS: block_on(p, verb); break;
    case SMTP_VERB_BDAT:
        smtp_verb_parse(line, len, &arg, &arg_len);
        if (smtp_bdat_parse(arg, arg_len, &size, &last) && size > 0) {
            p->mode = SMTP_IN_BDAT;
            p->bdat_left = size;
            p->bdat_last = last;
        }
        break;
    default: break;
    }
}

static void next_line(struct smtp_in *p, struct smtp_in_item *it, const uint8_t *d, size_t n)
{
    size_t limit = n < p->max_line ? n : p->max_line;
    const uint8_t *lf = memchr(d, '\n', limit);
    bool sasl = p->mode == SMTP_IN_SASL;
    if (!lf && n < p->max_line) {
        it->kind = SMTP_IN_NEED_MORE;
        return;
    }
    it->kind = SMTP_IN_LINE;
    it->bytes = d;
    it->len = lf ? (size_t)(lf - d) + 1 : limit;
    it->sasl = sasl;
    it->first = !p->in_long_line;
    it->complete = lf != NULL;
    if (it->first) p->line_verb = sasl ? SMTP_VERB_UNKNOWN : smtp_verb_parse(d, it->len, 0, 0);
    it->verb = p->line_verb;
    p->in_long_line = !it->complete;
    p->taken = it->len;
    if (!it->complete) return;
    if (sasl)
        block_on(p, SMTP_VERB_UNKNOWN);
    else if (it->first || it->verb != SMTP_VERB_BDAT) /* an over-long BDAT has lost its size */
        after_command(p, it->verb, d, it->len);
}

/* Scans DATA content for the end of data; returns the length up to and including the
 * terminator, or n when the terminator is not in d[0..n). */
static size_t scan_data_end(struct smtp_in *p, const uint8_t *d, size_t n, bool *end)
{
    int st = p->data_state;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        switch (st) {
        case DS_MID: {
            const uint8_t *cr = memchr(d + i, '\r', n - i);
            if (!cr) {
                i = n - 1;
                continue;
            }
            i = (size_t)(cr - d);
            st = DS_CR;
            break;
        }
        case DS_LINE_START: st = c == '.' ? DS_DOT : c == '\r' ? DS_CR : DS_MID; break;
        case DS_CR: st = c == '\n' ? DS_LINE_START : c == '\r' ? DS_CR : DS_MID; break;
        case DS_DOT: st = c == '\r' ? DS_DOT_CR : DS_MID; break;
        case DS_DOT_CR:
            if (c == '\n') {
                p->data_state = DS_LINE_START;
                *end = true;
                return i + 1;
            }
            st = c == '\r' ? DS_CR : DS_MID;
            break;
        }
    }
    p->data_state = st;
    *end = false;
    return n;
}

static void next_content(struct smtp_in *p, struct smtp_in_item *it, const uint8_t *d, size_t n)
{
    it->kind = SMTP_IN_CONTENT;
    it->bytes = d;
    if (p->mode == SMTP_IN_DATA) {
        it->len = scan_data_end(p, d, n, &it->end);
    } else {
        it->bdat = true;
        it->len = n < p->bdat_left ? n : (size_t)p->bdat_left;
        p->bdat_left -= it->len;
        it->end = p->bdat_left == 0;
    }
    if (it->end) p->mode = SMTP_IN_COMMAND;
    p->taken = it->len;
}

void smtp_in_next(struct smtp_in *p, struct smtp_in_item *it)
{
    smtp_in_settle(p);
    memset(it, 0, sizeof *it);
    const uint8_t *d = buf_head(&p->in);
    size_t n = buf_size(&p->in);
    if (n == 0) {
        it->kind = SMTP_IN_NEED_MORE;
        return;
    }
    switch (p->mode) {
    case SMTP_IN_COMMAND:
    case SMTP_IN_SASL: next_line(p, it, d, n); break;
    case SMTP_IN_WAIT: it->kind = SMTP_IN_BLOCKED; break;
    case SMTP_IN_DATA:
    case SMTP_IN_BDAT: next_content(p, it, d, n); break;
    case SMTP_IN_OPAQUE:
        it->kind = SMTP_IN_RAW;
        it->bytes = d;
        it->len = n;
        p->taken = n;
        break;
    }
}

size_t smtp_in_discard(struct smtp_in *p)
{
    smtp_in_settle(p);
    size_t dropped = buf_size(&p->in);
    buf_reset(&p->in);
    p->in_long_line = false;
    return dropped;
}

size_t smtp_in_reset(struct smtp_in *p)
{
    size_t dropped = smtp_in_discard(p);
    p->mode = SMTP_IN_COMMAND;
    return dropped;
}

enum smtp_in_mode smtp_in_resume(struct smtp_in *p, int code)
{
    if (p->mode != SMTP_IN_WAIT) return p->mode;
    switch (p->waiting_for) {
    case SMTP_VERB_DATA:
        p->mode = code == 354 ? SMTP_IN_DATA : SMTP_IN_COMMAND;
        p->data_state = DS_LINE_START;
        break;
    case SMTP_VERB_STARTTLS:
        p->mode = code >= 200 && code < 300 ? SMTP_IN_OPAQUE : SMTP_IN_COMMAND;
        break;
    default: p->mode = code == 334 ? SMTP_IN_SASL : SMTP_IN_COMMAND; break;
    }
    return p->mode;
}

/* ---- server replies --------------------------------------------------------------------- */

int smtp_reply_line_code(const uint8_t *line, size_t len, bool *more)
{
    *more = false;
    if (len < 3) return 0;
    if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' ||
        line[2] > '9')
        return 0;
    if (len > 3) {
        uint8_t sep = line[3];
        if (sep != ' ' && sep != '-' && sep != '\r' && sep != '\n') return 0;
        *more = sep == '-';
    }
    return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

void smtp_reply_init(struct smtp_reply_parser *p)
{
    memset(p, 0, sizeof *p);
    p->max_reply = DEFAULT_MAX_REPLY;
    buf_init(&p->in);
}

void smtp_reply_free(struct smtp_reply_parser *p)
{
    buf_free(&p->in);
}

static void smtp_reply_settle(struct smtp_reply_parser *p)
{
    if (p->taken) buf_consume(&p->in, p->taken);
    p->taken = 0;
}

void smtp_reply_feed(struct smtp_reply_parser *p, const uint8_t *bytes, size_t len)
{
    smtp_reply_settle(p);
    buf_append(&p->in, bytes, len);
}

static void reply_emit(struct smtp_reply_parser *p, struct smtp_reply *r, size_t len, bool partial)
{
    r->code = p->code;
    r->bytes = buf_head(&p->in);
    r->len = len;
    r->lines = p->lines;
    r->malformed = p->malformed;
    r->partial = partial;
    p->taken = len;
    p->scan = 0;
    p->cont = partial;
    if (partial) return; /* the same reply goes on in the next piece */
    p->lines = 0;
    p->code = 0;
    p->malformed = false;
}

/* The code of the line starting at d, or of the line a partial piece cut in two. */
static int line_code(struct smtp_reply_parser *p, const uint8_t *d, size_t len, bool *more)
{
    if (!p->mid_line) return smtp_reply_line_code(d, len, more);
    p->mid_line = false;
    *more = p->mid_more;
    return p->mid_code;
}

/* Bytes at the end of the buffer that a partial piece must leave behind: the start of an
 * unfinished line shorter than 4 bytes, whose code and marker are not known yet ("250" may
 * become "250-more" or "250 ok"). A line already cut by an earlier piece is known. */
static size_t undecided_tail(const struct smtp_reply_parser *p, size_t n)
{
    size_t open = n - p->scan;
    return !p->mid_line && open < 4 ? open : 0;
}

/* Emits what is buffered past the bound as a partial piece, remembering how a line cut in two
 * began. Returns false when nothing can be emitted yet (an undecided line start alone). */
static bool reply_emit_partial(struct smtp_reply_parser *p, struct smtp_reply *r, const uint8_t *d,
                               size_t n)
{
    size_t len = n - undecided_tail(p, n);
    if (len == 0) return false;
    if (p->scan < len && !p->mid_line) { /* cut inside a line: remember how it began */
        p->mid_line = true;
        p->mid_code = smtp_reply_line_code(d + p->scan, len - p->scan, &p->mid_more);
        if (p->lines == 0 && !p->cont) {
            p->code = p->mid_code;
            p->malformed = p->code == 0;
        }
    }
    reply_emit(p, r, len, true);
    return true;
}

bool smtp_reply_next(struct smtp_reply_parser *p, struct smtp_reply *r)
{
    smtp_reply_settle(p);
    const uint8_t *d = buf_head(&p->in);
    size_t n = buf_size(&p->in);
    while (p->scan < n) {
        const uint8_t *lf = memchr(d + p->scan, '\n', n - p->scan);
        if (!lf) break;
        size_t end = (size_t)(lf - d) + 1;
        bool more;
        int code = line_code(p, d + p->scan, end - p->scan, &more);
        if (p->lines == 0 && !p->cont)
            p->code = code;
        else if (code != p->code)
            p->malformed = true;
        if (code == 0) p->malformed = true;
        p->lines++;
        p->scan = end;
        /* A line without a code ends the reply only when it stands alone. */
        if ((code && !more) || (code == 0 && p->lines == 1)) {
            reply_emit(p, r, end, false);
            return true;
        }
    }
    return n > p->max_reply && reply_emit_partial(p, r, d, n);
}

size_t smtp_reply_take_rest(struct smtp_reply_parser *p, const uint8_t **bytes)
{
    smtp_reply_settle(p);
    *bytes = buf_head(&p->in);
    p->taken = buf_size(&p->in);
    p->scan = 0;
    p->lines = 0;
    p->code = 0;
    p->malformed = false;
    p->cont = p->mid_line = false;
    return p->taken;
}

/* ---- pairing FIFO ----------------------------------------------------------------------- */

void smtp_fifo_init(struct smtp_fifo *f, size_t max)
{
    memset(f, 0, sizeof *f);
    f->max = max;
}

void smtp_fifo_free(struct smtp_fifo *f)
{
    free(f->items);
    memset(f, 0, sizeof *f);
}

bool smtp_fifo_push(struct smtp_fifo *f, struct smtp_pending item)
{
    if (f->count >= f->max) return false;
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        struct smtp_pending *items = malloc(cap * sizeof *items);
        if (!items) abort();
        for (size_t i = 0; i < f->count; i++) items[i] = f->items[(f->head + i) % f->cap];
        free(f->items);
        f->items = items;
        f->cap = cap;
        f->head = 0;
    }
    f->items[(f->head + f->count) % f->cap] = item;
    f->count++;
    return true;
}

bool smtp_fifo_pop(struct smtp_fifo *f, struct smtp_pending *out)
{
    if (f->count == 0) return false;
    *out = f->items[f->head];
    f->head = (f->head + 1) % f->cap;
    f->count--;
    if (f->count == 0 && f->cap > 64) {
        free(f->items);
        f->items = NULL;
        f->cap = 0;
        f->head = 0;
    }
    return true;
}

const struct smtp_pending *smtp_fifo_peek(const struct smtp_fifo *f)
{
    return f->count ? &f->items[f->head] : NULL;
}

bool smtp_pending_blocks(const struct smtp_pending *p)
{
    if (p->kind == SMTP_PENDING_SASL) return true;
    if (p->kind != SMTP_PENDING_COMMAND) return false;
    return p->verb == SMTP_VERB_DATA || p->verb == SMTP_VERB_AUTH || p->verb == SMTP_VERB_STARTTLS;
}
