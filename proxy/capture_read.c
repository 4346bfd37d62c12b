/* capture_read.c - the capture reader (see capture_read.h): jsonl lines parsed by jansson,
 * replies paired with the commands they answer.
 *
 * Pairing: the jsonl has events in the order smtptap saw them, which is not always the order
 * the client got replies in: a fault's reply is written when smtptap sends it, possibly
 * before the server's replies to earlier pipelined commands. So a reply smtptap wrote itself
 * ("local") goes to the oldest waiting command that a fault answered (a "fault" event with
 * action "reply" follows that command), else to the oldest waiting command; a server's reply
 * goes to the oldest waiting command no fault answered. */
#include "smtptap/capture_read.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/buf.h"

enum { LINE_MAX_BYTES = 64 << 20, WAIT_MAX = 4096 };

struct capture_reader {
    struct capture_dialog d;
    struct buf partial; /* the line being read, without its LF */
    unsigned line;      /* lines read whole */
    char error[400];
    unsigned error_line;
    bool failed, seen_start, in_data;
    size_t waiting[WAIT_MAX]; /* steps waiting for their reply, oldest first */
    bool by_fault[WAIT_MAX];  /* ... that a fault answers */
    size_t nwaiting;
    unsigned group;
    struct buf body; /* content lines of the message being read */
    uint64_t content_lines;
    double t; /* of the current event */
};

static int fail(struct capture_reader *r, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct capture_reader *r, unsigned line, const char *fmt, ...)
{
    if (r->failed) return -1;
    r->failed = true;
    r->error_line = line;
    int n = snprintf(r->error, sizeof r->error, "line %u: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error + n, sizeof r->error - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

struct capture_reader *capture_reader_new(void)
{
    struct capture_reader *r = calloc(1, sizeof *r);
    if (!r) abort();
    buf_init(&r->partial);
    buf_init(&r->body);
    return r;
}

void capture_reader_free(struct capture_reader *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->d.n; i++) {
        free(r->d.steps[i].command);
        free(r->d.steps[i].reply);
        free(r->d.steps[i].body);
    }
    free(r->d.steps);
    buf_free(&r->partial);
    buf_free(&r->body);
    free(r);
}

const char *capture_reader_error(const struct capture_reader *r)
{
    return r->failed ? r->error : NULL;
}

unsigned capture_reader_error_line(const struct capture_reader *r)
{
    return r->failed ? r->error_line : 0;
}

const struct capture_dialog *capture_reader_dialog(const struct capture_reader *r)
{
    return &r->d;
}

/* ---- small helpers ------------------------------------------------------------------- */

static void *dup_bytes(const void *p, size_t n)
{
    uint8_t *c = malloc(n + 1);
    if (!c) abort();
    if (n) memcpy(c, p, n);
    c[n] = 0;
    return c;
}

static struct capture_step *new_step(struct capture_reader *r, enum capture_step_kind kind)
{
    struct capture_dialog *d = &r->d;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->steps = realloc(d->steps, d->cap * sizeof *d->steps);
        if (!d->steps) abort();
    }
    struct capture_step *s = &d->steps[d->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->line = r->line;
    s->latency_ms = -1;
    s->t = r->t;
    return s;
}

/* The bytes of key (a string) or of key_b64 (base64): a malloc'd copy with a NUL after it,
 * or NULL when the event has neither or the base64 is broken (*bad set). */
static uint8_t *bytes_of(json_t *o, const char *key, size_t *len, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return dup_bytes(json_string_value(v), *len);
    }
    char b64key[64];
    snprintf(b64key, sizeof b64key, "%s_b64", key);
    v = json_object_get(o, b64key);
    if (!json_is_string(v)) return NULL;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n % 4 || n > (size_t)1 << 30) return *bad = true, NULL;
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out) abort();
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
    if (got < 0) return free(out), *bad = true, NULL;
    size_t k = (size_t)got;
    for (size_t i = n; i > 0 && s[i - 1] == '=' && k > 0; i--) k--; /* the padding's zeros */
    out[k] = 0;
    *len = k;
    return out;
}

static void strip_crlf(uint8_t *b, size_t *len)
{
    while (*len && (b[*len - 1] == '\n' || b[*len - 1] == '\r')) b[--*len] = 0;
}

static void copy_str(json_t *o, const char *key, char *out, size_t size)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(out, size, "%s", s ? s : "");
}

/* ---- pairing ------------------------------------------------------------------------- */

static int wait_for_reply(struct capture_reader *r, size_t step)
{
    if (r->nwaiting == WAIT_MAX)
        return fail(r, r->line, "more than %d commands waiting for a reply", WAIT_MAX);
    if (r->nwaiting == 0) r->group++;
    r->d.steps[step].group = r->group;
    r->waiting[r->nwaiting] = step;
    r->by_fault[r->nwaiting++] = false;
    return 0;
}

/* The waiting step a reply goes to (see the top), removed from the queue; -1 when none. */
static long take_waiting(struct capture_reader *r, bool local)
{
    size_t pick = r->nwaiting;
    for (size_t i = 0; i < r->nwaiting && pick == r->nwaiting; i++)
        if (r->by_fault[i] == local) pick = i;
    if (pick == r->nwaiting && local && r->nwaiting) pick = 0;
    if (pick == r->nwaiting) return -1;
    long step = (long)r->waiting[pick];
    r->d.steps[step].fault = r->by_fault[pick];
    memmove(r->waiting + pick, r->waiting + pick + 1, (r->nwaiting - pick - 1) * sizeof(size_t));
    memmove(r->by_fault + pick, r->by_fault + pick + 1, (r->nwaiting - pick - 1) * sizeof(bool));
    r->nwaiting--;
    return step;
}

/* ---- events -------------------------------------------------------------------------- */

static int on_command(struct capture_reader *r, json_t *o, bool tls)
{
    if (json_is_true(json_object_get(o, "local"))) return 0; /* smtptap's own, upstream */
    size_t len = 0;
    bool bad = false;
    uint8_t *b = bytes_of(o, "line", &len, &bad);
    if (!b)
        return fail(r, r->line, "a \"command\" event without %s",
                    bad ? "valid base64 in \"line_b64\"" : "\"line\"");
    strip_crlf(b, &len);
    struct capture_step *s = new_step(r, STEP_COMMAND);
    s->command = (char *)b;
    s->command_len = len;
    s->tls = tls;
    return wait_for_reply(r, r->d.n - 1);
}

static void set_reply(struct capture_step *s, uint8_t *b, size_t len, json_t *facts, bool local,
                      double t)
{
    s->reply = b;
    s->reply_len = len;
    s->local = local;
    s->t_reply = t;
    json_t *code = json_object_get(facts, "code");
    s->code = json_is_integer(code) ? (int)json_integer_value(code) : 0;
    json_t *lat = json_object_get(facts, "latency_ms");
    if (json_is_number(lat)) s->latency_ms = json_number_value(lat);
}

static int on_reply(struct capture_reader *r, json_t *o, bool tls)
{
    if (json_is_true(json_object_get(o, "to_smtptap"))) return 0; /* not relayed */
    size_t len = 0;
    bool bad = false;
    uint8_t *b = bytes_of(o, "line", &len, &bad);
    if (!b)
        return fail(r, r->line, "a \"reply\" event without %s",
                    bad ? "valid base64 in \"line_b64\"" : "\"line\"");
    bool local = json_is_true(json_object_get(o, "local"));
    long w = take_waiting(r, local);
    struct capture_step *s;
    if (w >= 0) {
        s = &r->d.steps[w];
    } else {
        bool first = true;
        for (size_t i = 0; i < r->d.n && first; i++) first = r->d.steps[i].kind == STEP_TLS;
        s = new_step(r, first ? STEP_GREETING : STEP_UNSOLICITED);
        s->tls = tls;
    }
    set_reply(s, b, len, json_object_get(o, "reply"), local, r->t);
    char verb[16];
    capture_verb(s->command, verb, sizeof verb);
    if (s->kind == STEP_COMMAND && strcmp(verb, "DATA") == 0 && s->code == 354) r->in_data = true;
    return 0;
}

/* A fault answered the last command: its reply will be smtptap's own. */
static int on_fault(struct capture_reader *r, json_t *o)
{
    json_t *f = json_object_get(o, "fault");
    const char *action = json_string_value(json_object_get(f, "action"));
    if (!action || strcmp(action, "reply") != 0 || !r->nwaiting) return 0;
    r->by_fault[r->nwaiting - 1] = true;
    return 0;
}

static int on_content(struct capture_reader *r, json_t *o)
{
    size_t len = 0;
    bool bad = false;
    uint8_t *b = bytes_of(o, "line", &len, &bad);
    if (!b)
        return fail(r, r->line, "a \"content\" event without %s",
                    bad ? "valid base64 in \"line_b64\"" : "\"line\"");
    buf_append(&r->body, b, len);
    buf_append(&r->body, "\r\n", 2);
    r->content_lines++;
    free(b);
    return 0;
}

static uint64_t count_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* The end of a message: for DATA a step of its own (the server answers it); BDAT's last
 * chunk is a command already, whose reply answers the message. */
static int on_message(struct capture_reader *r, json_t *o, bool tls)
{
    json_t *m = json_object_get(o, "message");
    struct capture_step *s = NULL;
    if (r->in_data) {
        s = new_step(r, STEP_DATA_END);
        s->tls = tls;
        r->in_data = false;
        if (wait_for_reply(r, r->d.n - 1) < 0) return -1;
    } else {
        for (size_t i = r->d.n; i > 0 && !s; i--)
            if (r->d.steps[i - 1].kind == STEP_COMMAND) s = &r->d.steps[i - 1];
    }
    if (s) {
        s->msg_size = count_of(m, "size");
        s->msg_lines = count_of(m, "lines");
        s->content_lines = r->content_lines;
        s->body_len = buf_size(&r->body);
        free(s->body); /* a second message event for the same BDAT command (a broken capture) */
        s->body = dup_bytes(buf_head(&r->body), s->body_len);
    }
    buf_reset(&r->body);
    r->content_lines = 0;
    return 0;
}

static int on_info(struct capture_reader *r, json_t *o, bool tls)
{
    json_t *h = json_object_get(o, "handshake");
    if (!json_is_object(h)) return 0;
    struct capture_step *s = new_step(r, STEP_TLS);
    s->tls = tls;
    copy_str(h, "leg", s->tls_leg, sizeof s->tls_leg);
    copy_str(h, "version", s->tls_version, sizeof s->tls_version);
    copy_str(h, "cipher", s->tls_cipher, sizeof s->tls_cipher);
    copy_str(h, "verify", s->tls_verify, sizeof s->tls_verify);
    return 0;
}

/* The edited EHLO reply is what the client got: it replaces the server's in its step. */
static int on_edited_reply(struct capture_reader *r, json_t *o)
{
    (void)r, (void)o;
    return 0; /* steps keep the server's reply: smtptap edits it again when it replays */
}

static int on_session(struct capture_reader *r, json_t *o)
{
    json_t *s = json_object_get(o, "session");
    if (!json_is_integer(s)) return fail(r, r->line, "no \"session\" number");
    uint64_t id = (uint64_t)json_integer_value(s);
    if (!r->seen_start) {
        r->seen_start = true;
        r->d.session = id;
    } else if (id != r->d.session) {
        return fail(r, r->line,
                    "session %llu, but the capture began with session %llu: one session per "
                    "file (pick one with jq -c 'select(.session==%llu)')",
                    (unsigned long long)id, (unsigned long long)r->d.session,
                    (unsigned long long)id);
    }
    if (r->d.ended) return fail(r, r->line, "an event after the session's \"end\"");
    json_t *t = json_object_get(o, "t");
    r->t = json_is_number(t) ? json_number_value(t) : 0;
    return 0;
}

static int on_event(struct capture_reader *r, json_t *o)
{
    if (!json_is_object(o)) return fail(r, r->line, "not a JSON object");
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (!kind) return fail(r, r->line, "no \"kind\": not a smtptap jsonl event");
    if (on_session(r, o) < 0) return -1;
    bool tls = json_is_true(json_object_get(o, "tls"));
    if (strcmp(kind, "command") == 0) return on_command(r, o, tls);
    if (strcmp(kind, "reply") == 0) return on_reply(r, o, tls);
    if (strcmp(kind, "edited_reply") == 0) return on_edited_reply(r, o);
    if (strcmp(kind, "fault") == 0) return on_fault(r, o);
    if (strcmp(kind, "content") == 0) return on_content(r, o);
    if (strcmp(kind, "message") == 0) return on_message(r, o, tls);
    if (strcmp(kind, "info") == 0) return on_info(r, o, tls);
    if (strcmp(kind, "end") == 0) r->d.ended = true;
    return 0; /* other kinds say nothing about the dialog */
}

static int read_line(struct capture_reader *r, const uint8_t *p, size_t n, bool last)
{
    r->line++;
    if (n && p[n - 1] == '\r') n--;
    size_t blank = 0;
    while (blank < n && isspace(p[blank])) blank++;
    if (blank == n) return 0; /* an empty line: nothing */
    json_error_t e;
    json_t *o = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
    if (!o)
        return fail(r, r->line, "not valid JSON (%s, column %d)%s", e.text, e.column,
                    last ? "; the file ends in the middle of this line: truncated?" : "");
    int rc = on_event(r, o);
    json_decref(o);
    return rc;
}

int capture_reader_feed(struct capture_reader *r, const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    while (!r->failed && len) {
        const uint8_t *lf = memchr(p, '\n', len);
        size_t take = lf ? (size_t)(lf - p) : len;
        if (buf_size(&r->partial) + take > LINE_MAX_BYTES)
            return fail(r, r->line + 1, "longer than %d MiB", LINE_MAX_BYTES >> 20);
        if (!lf) {
            buf_append(&r->partial, p, take);
            return 0;
        }
        int rc;
        if (buf_size(&r->partial)) {
            buf_append(&r->partial, p, take);
            rc = read_line(r, buf_head(&r->partial), buf_size(&r->partial), false);
            buf_reset(&r->partial);
        } else {
            rc = read_line(r, p, take, false);
        }
        if (rc < 0) return -1;
        p += take + 1;
        len -= take + 1;
    }
    return r->failed ? -1 : 0;
}

int capture_reader_finish(struct capture_reader *r)
{
    if (r->failed) return -1;
    if (buf_size(&r->partial)) {
        int rc = read_line(r, buf_head(&r->partial), buf_size(&r->partial), true);
        buf_reset(&r->partial);
        if (rc < 0) return -1;
    }
    if (!r->seen_start) return fail(r, r->line + 1, "no events: an empty capture");
    if (!r->d.ended)
        return fail(r, r->line + 1,
                    "the capture ends without the session's \"end\" event (truncated, or the "
                    "session was still running)");
    return 0;
}

/* ---- words --------------------------------------------------------------------------- */

void capture_verb(const char *command, char *out, size_t size)
{
    size_t i = 0;
    if (!size) return;
    for (; command && command[i] && command[i] != ' ' && i + 1 < size; i++)
        out[i] = (char)toupper((unsigned char)command[i]);
    out[i] = 0;
}

void capture_enhanced_code(const uint8_t *reply, size_t len, char *out, size_t size)
{
    out[0] = 0;
    if (!reply || len < 5 || !size) return;
    const uint8_t *p = reply + 4, *end = reply + len;
    const uint8_t *q = p;
    int dots = 0;
    while (q < end && (isdigit(*q) || *q == '.')) dots += *q++ == '.';
    size_t n = (size_t)(q - p);
    if (dots != 2 || n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.') return;
    if (q < end && *q != ' ' && *q != '\r' && *q != '\n') return;
    snprintf(out, size, "%.*s", (int)n, (const char *)p);
}
