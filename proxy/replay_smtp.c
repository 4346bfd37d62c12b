/* replay_smtp.c - the recorded server's protocol (see replay_smtp.h): the client's stream
 * framed by the relay's own framer, each command matched with the next recorded one. */
#include "smtptap/replay_smtp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_sasl_step(const struct capture_dialog *d, size_t i)
{
    return d->steps[i].kind == STEP_COMMAND && i > 0 && d->steps[i - 1].code == 334;
}

/* A step the replay passes over: it is no command of the client's that the server
 * answered (TLS facts; smtptap's own STARTTLS and repeated EHLO, which the session answers
 * again on the client's side). */
static bool passed_over(const struct capture_dialog *d, size_t i)
{
    const struct capture_step *s = &d->steps[i];
    if (s->kind == STEP_TLS || s->kind == STEP_GREETING) return true;
    if (s->kind != STEP_COMMAND) return false;
    char verb[16];
    capture_verb(s->command, verb, sizeof verb);
    return strcmp(verb, "STARTTLS") == 0 || (s->local && !s->fault);
}

/* The replay's pace: how long after the previous reply this step's reply is due. */
static double delay_of(const struct replay_smtp *r, const struct capture_step *s)
{
    if (r->speed <= 0) return 0;
    double waited = s->kind == STEP_GREETING ? s->t_reply : s->t_reply - s->t;
    return waited > 0 ? waited * 1e3 / r->speed : 0;
}

static void send_step(struct replay_smtp *r, size_t i)
{
    const struct capture_step *s = &r->d->steps[i];
    r->next = i + 1;
    if (!s->reply) { /* the server said nothing more: the recording ends here */
        r->quit = true;
        return;
    }
    if (s->reply_len && s->reply[s->reply_len - 1] == '\n') {
        r->out.reply(r->out.ctx, s->reply, s->reply_len, delay_of(r, s));
    } else { /* a capture edited by hand, or a reply cut off: ended, or the client waits */
        uint8_t *ended = malloc(s->reply_len + 2);
        if (!ended) abort();
        memcpy(ended, s->reply, s->reply_len);
        memcpy(ended + s->reply_len, "\r\n", 2);
        r->out.reply(r->out.ctx, ended, s->reply_len + 2, delay_of(r, s));
        free(ended);
    }
    if (s->code == 221 || s->code == 421) r->quit = true;
    /* A reply nothing asked for (a 421 mid-session) follows the one before it. */
    while (!r->quit && r->next < r->d->n && r->d->steps[r->next].kind == STEP_UNSOLICITED)
        send_step(r, r->next);
}

/* The first word after the verb (AUTH's mechanism), upper-cased into out. */
static void second_word(const char *line, size_t len, char *out, size_t size)
{
    size_t i = 0, o = 0;
    while (i < len && line[i] != ' ') i++;
    while (i < len && line[i] == ' ') i++;
    for (; i < len && line[i] != ' ' && o + 1 < size; i++)
        out[o++] = (char)toupper((unsigned char)line[i]);
    out[o] = 0;
}

static size_t verb_length(const char *line, size_t len)
{
    size_t v = 0;
    while (v < len && line[v] != ' ') v++;
    return v;
}

static bool matches(const struct replay_smtp *r, size_t i, const char *line, size_t len, bool sasl)
{
    const struct capture_step *s = &r->d->steps[i];
    if (s->kind != STEP_COMMAND || is_sasl_step(r->d, i) != sasl) return false;
    if (r->strict) { /* the same text; the verb in any case (smtplib: "ehlo", swaks: "EHLO") */
        size_t v = verb_length(line, len);
        return s->command_len == len && strncasecmp(s->command, line, v) == 0 &&
               memcmp(s->command + v, line + v, len - v) == 0;
    }
    if (sasl) return true;
    char want[16], got[16];
    capture_verb(s->command, want, sizeof want);
    char copy[16];
    snprintf(copy, sizeof copy, "%.*s", (int)(len < 15 ? len : 15), line);
    capture_verb(copy, got, sizeof got);
    if (strcmp(want, got) != 0) return false;
    if (strcmp(want, "AUTH") != 0) return true;
    char ma[32], mb[32];
    second_word(s->command, s->command_len, ma, sizeof ma);
    second_word(line, len, mb, sizeof mb);
    return strcmp(ma, mb) == 0;
}

/* The step answering the client's line (kind STEP_COMMAND) or message end (STEP_DATA_END),
 * or -1. */
static long find(const struct replay_smtp *r, enum capture_step_kind kind, const char *line,
                 size_t len, bool sasl)
{
    for (size_t i = r->next; i < r->d->n; i++) {
        if (kind == STEP_DATA_END && r->d->steps[i].kind == STEP_DATA_END) return (long)i;
        if (kind == STEP_COMMAND && matches(r, i, line, len, sasl)) return (long)i;
        if (!passed_over(r->d, i)) return -1;
    }
    return -1;
}

/* A client may leave before the recording did: its QUIT gets the recording's QUIT reply,
 * wherever that is. */
static long find_quit(const struct replay_smtp *r, const char *line, size_t len)
{
    for (size_t i = r->next; i < r->d->n; i++)
        if (matches(r, i, line, len, false)) return (long)i;
    return -1;
}

/* No recorded counterpart: the 451 and the note. */
static void unmatched(struct replay_smtp *r, const char *what, size_t len)
{
    char reply[600], note[900], where[400];
    snprintf(reply, sizeof reply, "451 4.3.0 smtptap replay: no recorded reply for \"%.*s\"\r\n",
             (int)(len > 400 ? 400 : len), what);
    size_t i = r->next;
    while (i < r->d->n && passed_over(r->d, i)) i++;
    if (i == r->d->n) {
        snprintf(where, sizeof where, "after the recording's last step");
    } else {
        const struct capture_step *s = &r->d->steps[i];
        const char *rec = s->kind == STEP_DATA_END ? "the end of a message"
                          : s->command             ? s->command
                                                   : "(a reply)";
        snprintf(where, sizeof where, "where the recording has %s%s%s (line %u)",
                 s->command ? "\"" : "", rec, s->command ? "\"" : "", s->line);
    }
    snprintf(note, sizeof note, "replay: \"%.*s\" left the recording %s; answered 451",
             (int)(len > 300 ? 300 : len), what, where);
    r->out.note(r->out.ctx, note);
    r->out.reply(r->out.ctx, (const uint8_t *)reply, strlen(reply), 0);
}

static int code_of_step(const struct replay_smtp *r, long i)
{
    return i < 0 ? 451 : r->d->steps[i].code;
}

static void on_line(struct replay_smtp *r, const struct smtp_in_item *it)
{
    if (!it->complete) return; /* an over-long line: answered at its end */
    if (!it->first) {
        static const char too_long[] = "500 5.5.2 smtptap replay: line too long\r\n";
        r->out.reply(r->out.ctx, (const uint8_t *)too_long, sizeof too_long - 1, 0);
        if (smtp_in_mode(&r->in) == SMTP_IN_WAIT) smtp_in_resume(&r->in, 500);
        return;
    }
    size_t len = it->len;
    while (len && (it->bytes[len - 1] == '\n' || it->bytes[len - 1] == '\r')) len--;
    const char *line = (const char *)it->bytes;
    long i = find(r, STEP_COMMAND, line, len, it->sasl);
    if (i < 0 && it->verb == SMTP_VERB_QUIT && !it->sasl) i = find_quit(r, line, len);
    if (i < 0) {
        unmatched(r, line, len);
        if (it->verb == SMTP_VERB_BDAT) r->bdat_unmatched = true;
    } else if (it->verb == SMTP_VERB_BDAT && !it->sasl) {
        uint64_t size = 0;
        bool last = false;
        const uint8_t *arg;
        size_t arg_len;
        smtp_verb_parse(it->bytes, len, &arg, &arg_len);
        if (!smtp_bdat_parse(arg, arg_len, &size, &last)) size = 0;
        if (size) { /* answered once its octets are in */
            r->bdat = i;
            r->next = (size_t)i + 1;
        } else {
            send_step(r, (size_t)i);
        }
    } else {
        send_step(r, (size_t)i);
    }
    if (smtp_in_mode(&r->in) == SMTP_IN_WAIT) smtp_in_resume(&r->in, code_of_step(r, i));
}

static void on_content_end(struct replay_smtp *r, bool bdat)
{
    if (bdat) {
        if (r->bdat >= 0) send_step(r, (size_t)r->bdat);
        r->bdat = -1;
        r->bdat_unmatched = false;
        return;
    }
    long i = find(r, STEP_DATA_END, NULL, 0, false);
    if (i < 0)
        unmatched(r, "(end of message)", 16);
    else
        send_step(r, (size_t)i);
}

void replay_smtp_init(struct replay_smtp *r, const struct capture_dialog *d, bool strict,
                      double speed, const struct replay_smtp_out *out)
{
    memset(r, 0, sizeof *r);
    smtp_in_init(&r->in);
    r->d = d;
    r->strict = strict;
    r->speed = speed;
    r->bdat = -1;
    r->out = *out;
    size_t i = 0;
    while (i < d->n && d->steps[i].kind == STEP_TLS) i++;
    if (i < d->n && d->steps[i].kind == STEP_GREETING) {
        send_step(r, i);
    } else {
        static const char none[] = "554 5.3.0 smtptap replay: the recording has no greeting\r\n";
        r->out.note(r->out.ctx, "replay: the recording has no greeting");
        r->out.reply(r->out.ctx, (const uint8_t *)none, sizeof none - 1, 0);
        r->quit = true;
    }
}

void replay_smtp_free(struct replay_smtp *r)
{
    smtp_in_free(&r->in);
}

void replay_smtp_input(struct replay_smtp *r, const uint8_t *bytes, size_t len)
{
    if (r->quit) return;
    smtp_in_feed(&r->in, bytes, len);
    for (;;) {
        struct smtp_in_item it;
        smtp_in_next(&r->in, &it);
        if (it.kind == SMTP_IN_NEED_MORE || it.kind == SMTP_IN_BLOCKED) return;
        if (it.kind == SMTP_IN_LINE) on_line(r, &it);
        if (it.kind == SMTP_IN_CONTENT && it.end) on_content_end(r, it.bdat);
        if (r->quit) return;
    }
}
