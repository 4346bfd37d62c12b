/* capture_diff.c - two recorded dialogs compared (see capture_diff.h). Steps are aligned by
 * their order: the first row that differs is where the sessions diverged; TLS facts are
 * compared per leg (the first handshake of each), so that an upstream TLS handshake on one
 * side only does not shift every row after it. */
#include "smtptap/capture_diff.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { CMD_W = 44, CELL_W = 24 };

/* ---- normalising ------------------------------------------------------------------- */

/* Appends word w (n bytes) to out as the normal form of a MAIL/RCPT argument. */
static size_t put_word(char *out, size_t o, size_t size, const char *w, size_t n, bool mail)
{
    if (o && o + 1 < size) out[o++] = ' ';
    if (mail && n > 5 && strncasecmp(w, "SIZE=", 5) == 0) {
        w = "SIZE=*";
        n = 6;
    }
    for (size_t i = 0; i < n && o + 1 < size; i++) out[o++] = w[i];
    return o;
}

void capture_normalize_command(const char *command, char *out, size_t size)
{
    if (!size) return;
    char verb[16];
    capture_verb(command, verb, sizeof verb);
    bool mail = strcmp(verb, "MAIL") == 0 || strcmp(verb, "RCPT") == 0;
    bool auth = strcmp(verb, "AUTH") == 0;
    size_t o = 0, words = 0;
    const char *p = command ? command : "";
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t') p++;
        if (p == w) break;
        size_t n = (size_t)(p - w);
        if (words == 0) {
            o = put_word(out, o, size, verb, strlen(verb), false);
        } else if (auth && words >= 2) {
            o = put_word(out, o, size, "...", 3, false);
            break;
        } else if (mail && words == 1) { /* "FROM:<A@B>" or "TO:<..>": upper the keyword */
            const char *colon = memchr(w, ':', n);
            size_t k = colon ? (size_t)(colon - w) + 1 : 0;
            if (o && o + 1 < size) out[o++] = ' ';
            for (size_t i = 0; i < k && o + 1 < size; i++)
                out[o++] = (char)toupper((unsigned char)w[i]);
            for (size_t i = k; i < n && o + 1 < size; i++)
                out[o++] = (char)tolower((unsigned char)w[i]);
        } else {
            o = put_word(out, o, size, w, n, mail);
            if (auth) /* the mechanism, upper-cased */
                for (size_t i = o - n; i < o; i++) out[i] = (char)toupper((unsigned char)out[i]);
        }
        words++;
    }
    out[o] = 0;
}

void capture_capabilities(const uint8_t *reply, size_t len, struct buf *out)
{
    size_t i = 0;
    bool first = true;
    while (i < len) {
        const uint8_t *nl = memchr(reply + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - reply) : len;
        if (!first && end - i > 4) {
            size_t k = i + 4;
            while (k < end && reply[k] != ' ' && reply[k] != '\r' && reply[k] != '=') {
                char c = (char)toupper(reply[k++]);
                buf_append(out, &c, 1);
            }
            buf_append(out, "\n", 1);
        }
        first = false;
        i = end + 1;
    }
}

/* ---- one step ---------------------------------------------------------------------- */

static bool is_sasl(const struct capture_dialog *d, size_t i)
{
    return d->steps[i].kind == STEP_COMMAND && i > 0 && d->steps[i - 1].code == 334;
}

/* What the step was: the normal command, "(greeting)", ... */
static void step_what(const struct capture_dialog *d, size_t i, char *out, size_t size)
{
    const struct capture_step *s = &d->steps[i];
    switch (s->kind) {
    case STEP_GREETING: snprintf(out, size, "(greeting)"); return;
    case STEP_DATA_END: snprintf(out, size, "(end of message)"); return;
    case STEP_UNSOLICITED: snprintf(out, size, "(reply nothing asked for)"); return;
    case STEP_TLS: snprintf(out, size, "(TLS)"); return;
    case STEP_COMMAND: break;
    }
    if (is_sasl(d, i))
        snprintf(out, size, "(SASL line)");
    else
        capture_normalize_command(s->command, out, size);
}

static void step_reply(const struct capture_step *s, char *out, size_t size)
{
    if (!s->reply) {
        snprintf(out, size, "(no reply)");
        return;
    }
    char enh[16];
    capture_enhanced_code(s->reply, s->reply_len, enh, sizeof enh);
    snprintf(out, size, "%d%s%s%s", s->code, enh[0] ? " " : "", enh, s->local ? " [smtptap]" : "");
}

/* The capability differences of two EHLO replies, as " -8BITMIME +CHUNKING"; "" when none. */
static void caps_diff(const struct capture_step *a, const struct capture_step *b, struct buf *why)
{
    struct buf ca, cb;
    buf_init(&ca), buf_init(&cb);
    capture_capabilities(a->reply, a->reply_len, &ca);
    capture_capabilities(b->reply, b->reply_len, &cb);
    buf_append(&ca, "", 1), buf_append(&cb, "", 1);
    const char *sa = (const char *)buf_head(&ca), *sb = (const char *)buf_head(&cb);
    for (int pass = 0; pass < 2; pass++) {
        const char *from = pass ? sb : sa, *in = pass ? sa : sb;
        for (const char *p = from; *p;) {
            const char *nl = strchr(p, '\n');
            size_t n = (size_t)(nl - p);
            bool found = false;
            for (const char *q = in; *q && !found;) {
                const char *ql = strchr(q, '\n');
                found = (size_t)(ql - q) == n && memcmp(p, q, n) == 0;
                q = ql + 1;
            }
            if (!found) buf_printf(why, " %c%.*s", pass ? '+' : '-', (int)n, p);
            p = nl + 1;
        }
    }
    buf_free(&ca), buf_free(&cb);
}

/* How long the client waited for the step's reply (a fault's delay included), -1 when it
 * got none. */
static double waited_ms(const struct capture_step *s)
{
    if (!s->reply || s->kind == STEP_GREETING) return -1;
    return (s->t_reply - s->t) * 1e3;
}

/* Why rows i of a and b differ, appended to why ("" when they do not). */
static void row_reasons(const struct capture_dialog *a, const struct capture_dialog *b, size_t i,
                        const struct capture_diff_options *o, struct buf *why)
{
    const struct capture_step *sa = &a->steps[i], *sb = &b->steps[i];
    char wa[256], wb[256];
    step_what(a, i, wa, sizeof wa);
    step_what(b, i, wb, sizeof wb);
    if (sa->kind != sb->kind || strcmp(wa, wb) != 0) buf_printf(why, "; command: B sent %s", wb);
    char ea[16], eb[16];
    capture_enhanced_code(sa->reply, sa->reply_len, ea, sizeof ea);
    capture_enhanced_code(sb->reply, sb->reply_len, eb, sizeof eb);
    if (sa->code != sb->code)
        buf_printf(why, "; code");
    else if (strcmp(ea, eb) != 0)
        buf_printf(why, "; enhanced code");
    char verb[16];
    capture_verb(sa->command, verb, sizeof verb);
    if (sa->code == 250 && sb->code == 250 && strcmp(verb, "EHLO") == 0) {
        struct buf caps;
        buf_init(&caps);
        caps_diff(sa, sb, &caps);
        if (buf_size(&caps))
            buf_printf(why, "; capabilities:%.*s", (int)buf_size(&caps),
                       (const char *)buf_head(&caps));
        buf_free(&caps);
    }
    double ta = waited_ms(sa), tb = waited_ms(sb);
    if (ta >= 0 && tb >= 0 && fabs(ta - tb) > o->time_threshold_ms)
        buf_printf(why, "; time: %.3f s vs %.3f s", ta / 1e3, tb / 1e3);
}

/* ---- the table --------------------------------------------------------------------- */

/* s cut to w columns ("..." at the end when it was longer). */
static void fit(const char *s, size_t w, char *out, size_t size)
{
    size_t n = strlen(s);
    if (n <= w)
        snprintf(out, size, "%s", s);
    else
        snprintf(out, size, "%.*s...", (int)(w - 3), s);
}

static void put_row(struct buf *out, bool differs, const char *step, const char *what,
                    const char *ra, const char *rb, const char *why)
{
    char w[CMD_W + 1], a[CELL_W + 1], b[CELL_W + 1];
    fit(what, CMD_W, w, sizeof w);
    fit(ra, CELL_W, a, sizeof a);
    fit(rb, CELL_W, b, sizeof b);
    char line[400];
    snprintf(line, sizeof line, "%s %-5s %-*s %-*s %-*s %s", differs ? "!" : " ", step, CMD_W, w,
             CELL_W, a, CELL_W, b, why);
    size_t n = strlen(line);
    while (n && line[n - 1] == ' ') n--;
    buf_append(out, line, n);
    buf_append(out, "\n", 1);
}

struct first_diff {
    bool found;
    char text[1200];
};

static void note_first(struct first_diff *f, const char *fmt, const char *a, const char *b,
                       const char *c)
{
    if (f->found) return;
    f->found = true;
    snprintf(f->text, sizeof f->text, fmt, a, b, c);
}

/* One aligned step row; true when it differs. */
static bool step_row(const struct capture_dialog *a, const struct capture_dialog *b, size_t i,
                     const struct capture_diff_options *o, struct buf *out, struct first_diff *f)
{
    char num[24], what[256], ra[64] = "(nothing)", rb[64] = "(nothing)", lines[64];
    snprintf(num, sizeof num, "%zu", i + 1);
    struct buf why;
    buf_init(&why);
    if (i < a->n && i < b->n) {
        step_what(a, i, what, sizeof what);
        step_reply(&a->steps[i], ra, sizeof ra);
        step_reply(&b->steps[i], rb, sizeof rb);
        row_reasons(a, b, i, o, &why);
        snprintf(lines, sizeof lines, "A line %u, B line %u", a->steps[i].line, b->steps[i].line);
    } else if (i < a->n) {
        step_what(a, i, what, sizeof what);
        step_reply(&a->steps[i], ra, sizeof ra);
        buf_printf(&why, "; only in A");
        snprintf(lines, sizeof lines, "A line %u", a->steps[i].line);
    } else {
        step_what(b, i, what, sizeof what);
        step_reply(&b->steps[i], rb, sizeof rb);
        buf_printf(&why, "; only in B");
        snprintf(lines, sizeof lines, "B line %u", b->steps[i].line);
    }
    buf_append(&why, "", 1);
    const char *reasons = (const char *)buf_head(&why);
    bool differs = reasons[0] != 0;
    put_row(out, differs, num, what, ra, rb, differs ? reasons + 2 : "");
    if (differs) {
        char head[400];
        snprintf(head, sizeof head, "step %s (%s): %s", num, lines, what);
        char tail[160];
        snprintf(tail, sizeof tail, "A %s, B %s", ra, rb);
        note_first(f, "%s: %s: %s", head, tail, reasons + 2);
    }
    buf_free(&why);
    return differs;
}

/* The first handshake of a leg ("client", "upstream"), or NULL. */
static const struct capture_step *first_tls(const struct capture_dialog *d, const char *leg)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->steps[i].kind == STEP_TLS && strcmp(d->steps[i].tls_leg, leg) == 0)
            return &d->steps[i];
    return NULL;
}

static void tls_text(const struct capture_step *s, char *out, size_t size)
{
    if (!s)
        snprintf(out, size, "(no TLS)");
    else
        snprintf(out, size, "%s %s%s%s", s->tls_version, s->tls_cipher, s->tls_verify[0] ? " " : "",
                 s->tls_verify);
}

static bool tls_row(const struct capture_dialog *a, const struct capture_dialog *b, const char *leg,
                    struct buf *out, struct first_diff *f)
{
    const struct capture_step *ta = first_tls(a, leg), *tb = first_tls(b, leg);
    if (!ta && !tb) return false;
    char xa[300], xb[300], what[32];
    tls_text(ta, xa, sizeof xa);
    tls_text(tb, xb, sizeof xb);
    snprintf(what, sizeof what, "(%s TLS)", leg);
    bool differs = strcmp(xa, xb) != 0;
    char why[800];
    snprintf(why, sizeof why, "%s%s%s%s", differs ? "A " : "", differs ? xa : "",
             differs ? " | B " : "", differs ? xb : "");
    put_row(out, differs, "tls", what, ta ? ta->tls_version : "-", tb ? tb->tls_version : "-", why);
    if (differs) note_first(f, "%s: A %s, B %s", what, xa, xb);
    return differs;
}

size_t capture_diff(const struct capture_dialog *a, const struct capture_dialog *b,
                    const struct capture_diff_options *o, struct buf *out)
{
    struct capture_dialog da = {0}, db = {0}; /* the steps but TLS ones, aligned by index */
    struct capture_step *sa = malloc((a->n + 1) * sizeof *sa),
                        *sb = malloc((b->n + 1) * sizeof *sb);
    if (!sa || !sb) abort();
    for (size_t i = 0; i < a->n; i++)
        if (a->steps[i].kind != STEP_TLS) sa[da.n++] = a->steps[i];
    for (size_t i = 0; i < b->n; i++)
        if (b->steps[i].kind != STEP_TLS) sb[db.n++] = b->steps[i];
    da.steps = sa, db.steps = sb;
    put_row(out, false, "step", "command", "A", "B", "");
    struct first_diff f = {0};
    size_t differ = 0, rows = da.n > db.n ? da.n : db.n;
    for (size_t i = 0; i < rows; i++) differ += step_row(&da, &db, i, o, out, &f);
    differ += tls_row(a, b, "client", out, &f);
    differ += tls_row(a, b, "upstream", out, &f);
    if (!differ)
        buf_printf(out, "%s and %s: the same dialog (%zu steps)\n", o->name_a, o->name_b, rows);
    else
        buf_printf(out, "%s and %s differ in %zu row%s; first at %s\n", o->name_a, o->name_b,
                   differ, differ == 1 ? "" : "s", f.text);
    free(sa), free(sb);
    return differ;
}
